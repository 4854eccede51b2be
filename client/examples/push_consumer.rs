//! A push consumer: clustering (the group shares the queues) or, with `broadcast` as
//! the third argument, broadcasting (every consumer gets everything). A listener that
//! answers `ReconsumeLater` gets the message again later through the retry topic.
//!
//! ```text
//! cargo run -p client --example push_consumer -- 127.0.0.1:9876 TopicTest [broadcast] [seconds]
//! ```

use client::{ConsumeStatus, MessageExt, MessageModel, PushConsumer};

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".into());
    let topic = args.next().unwrap_or_else(|| "TopicTest".into());
    let model = match args.next().as_deref() {
        Some("broadcast") => MessageModel::Broadcasting,
        _ => MessageModel::Clustering,
    };
    let consumer = PushConsumer::builder("example_consumer")
        .namesrv(&namesrv)
        .subscribe(&topic, "*")
        .message_model(model)
        .consume_batch(8)
        .queue_thresholds(1000, 64 << 20)
        .start(|msgs: Vec<MessageExt>| async move {
            for m in &msgs {
                println!(
                    "{} {:?} reconsumed {}: {}",
                    m.msg_id(),
                    m.tags(),
                    m.reconsume_times,
                    String::from_utf8_lossy(&m.body)
                );
            }
            ConsumeStatus::Success
        })
        .await?;
    let secs: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(60);
    println!("consuming as {} for {secs} s", consumer.client_id());
    tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
    consumer.shutdown().await; // commits offsets
    Ok(())
}
