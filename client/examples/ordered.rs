//! Ordered messages: each order's steps go to one queue (hash of the order id) and an
//! orderly consumer sees them in sequence.
//!
//! ```text
//! cargo run -p client --example ordered -- 127.0.0.1:9876 OrderTopic
//! ```

use client::{ConsumeFrom, ConsumeStatus, Message, MessageExt, Producer, PushConsumer};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".into());
    let topic = args.next().unwrap_or_else(|| "OrderTopic".into());

    let consumer = PushConsumer::builder("example_orderly")
        .namesrv(&namesrv)
        .subscribe(&topic, "*")
        .consume_from(ConsumeFrom::FirstOffset)
        .start_orderly(|msgs: Vec<MessageExt>| async move {
            for m in &msgs {
                println!(
                    "queue {} offset {}: {}",
                    m.queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(&m.body)
                );
            }
            ConsumeStatus::Success
        })
        .await?;

    let producer = Producer::builder("example_ordered_producer")
        .namesrv(&namesrv)
        .start()
        .await?;
    for step in ["created", "paid", "shipped", "delivered"] {
        for order in ["order-1", "order-2"] {
            let msg = Message::new(&topic, format!("{order} {step}"));
            producer.send_ordered(msg, order).await?;
        }
    }

    tokio::time::sleep(Duration::from_secs(5)).await;
    consumer.shutdown().await;
    producer.shutdown().await;
    Ok(())
}
