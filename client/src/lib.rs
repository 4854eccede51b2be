//! Client side of the RocketMQ remoting protocol.
//!
//! - The async client library, on tokio: [`Producer`] (sync, async, oneway, batch,
//!   ordered, transactional sends with retries and broker fail-over),
//!   [`PushConsumer`] (clustering with rebalance, broadcasting with a local offset
//!   store, concurrent or orderly consumption, tag and SQL92 subscriptions, long
//!   polling with flow control, retry through the broker) and [`LitePullConsumer`]
//!   (explicit queues and offsets, seek by timestamp).
//! - The admin CLI (`rmqadmin`), on a small blocking connection ([`remoting`],
//!   [`admin`]).
//!
//! Everything speaks only the remoting protocol, through the `protocol` crate, so it
//! works against our broker and against Apache RocketMQ itself.
//!
//! Runtime: tokio, because applications that embed a client already run it; the broker's
//! thread-per-core runtime (glommio) needs pinned threads and locked memory that an
//! application cannot be asked for. Every async call must run inside a tokio runtime.

pub mod addrsrv;
pub mod admin;
mod allocate;
pub mod consumer;
mod error;
mod instance;
pub mod message;
mod net;
pub mod producer;
pub mod remoting;

pub use allocate::AllocateStrategy;
pub use consumer::lite::LitePullConsumer;
pub use consumer::push::{ConsumeStatus, PushConsumer, PushConsumerBuilder};
pub use consumer::{ConsumeFrom, MessageModel, Subscription};
pub use error::{ClientError, Result};
pub use instance::ClientConfig;
pub use message::{Message, MessageExt, MessageQueue, SendResult, SendStatus};
pub use producer::{LocalTransactionState, Producer, ProducerBuilder, TransactionListener};
