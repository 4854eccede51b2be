//! The lite pull consumer: explicit queues and offsets, seek by time, commit by hand.
//!
//! ```text
//! cargo run -p client --example lite_pull -- 127.0.0.1:9876 TopicTest
//! ```

use client::{ClientConfig, LitePullConsumer};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".into());
    let topic = args.next().unwrap_or_else(|| "TopicTest".into());
    let mut consumer = LitePullConsumer::start("example_lite", ClientConfig::new(&namesrv)).await?;
    let queues = consumer.fetch_queues(&topic).await?;
    consumer.assign(queues.clone(), "*").await?;
    // Everything stored in the last hour.
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        - 3_600_000;
    for mq in &queues {
        consumer.seek_to_timestamp(mq, an_hour_ago).await?;
    }
    loop {
        let msgs = consumer.poll(Duration::from_secs(2)).await?;
        if msgs.is_empty() {
            break;
        }
        for m in &msgs {
            println!(
                "{:?} {}: {}",
                m.message_queue(),
                m.queue_offset,
                String::from_utf8_lossy(&m.body)
            );
        }
        consumer.commit().await?;
    }
    consumer.shutdown().await;
    Ok(())
}
