//! A transactional producer: the half message becomes visible only once the local
//! transaction commits; when the outcome is unknown, the broker asks the listener later.
//!
//! ```text
//! cargo run -p client --example transaction -- 127.0.0.1:9876 TxTopic
//! ```

use client::{LocalTransactionState, Message, MessageExt, Producer};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".into());
    let topic = args.next().unwrap_or_else(|| "TxTopic".into());
    let producer = Producer::builder("example_tx_producer")
        .namesrv(&namesrv)
        // Asked by the broker about transactions left undecided.
        .transaction_listener(|msg: &MessageExt| {
            println!("broker asks about {}: committing", msg.msg_id());
            LocalTransactionState::Commit
        })
        .start()
        .await?;
    for (body, outcome) in [
        ("debit account 1", LocalTransactionState::Commit),
        ("debit account 2", LocalTransactionState::Rollback),
        ("debit account 3", LocalTransactionState::Unknown),
    ] {
        let (result, state) = producer
            .send_in_transaction(Message::new(&topic, body), |_msg, _sent| outcome)
            .await?;
        println!("{body}: {} -> {state:?}", result.msg_id);
    }
    // Stay up for the broker's check-back of the unknown one.
    tokio::time::sleep(Duration::from_secs(70)).await;
    producer.shutdown().await;
    Ok(())
}
