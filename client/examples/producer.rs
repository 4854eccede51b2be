//! Sends messages every way the producer can: sync, async, with a callback, oneway,
//! batched, delayed and with a timer.
//!
//! ```text
//! cargo run -p client --example producer -- 127.0.0.1:9876 TopicTest
//! ```

use client::{Message, Producer};

#[tokio::main]
async fn main() -> Result<(), client::ClientError> {
    let mut args = std::env::args().skip(1);
    let namesrv = args.next().unwrap_or_else(|| "127.0.0.1:9876".into());
    let topic = args.next().unwrap_or_else(|| "TopicTest".into());
    let producer = Producer::builder("example_producer")
        .namesrv(&namesrv)
        .start()
        .await?;

    // Sync: waits for the broker to store it.
    let msg = Message::new(&topic, "hello")
        .with_tags("TagA")
        .with_keys(["order-1001"]);
    let result = producer.send(msg).await?;
    println!(
        "sync: {} -> {:?} offset {}",
        result.msg_id, result.message_queue, result.queue_offset
    );

    // Async: many in flight, answers later.
    let pending: Vec<_> = (0..10)
        .map(|i| producer.send_async(Message::new(&topic, format!("async {i}"))))
        .collect();
    for p in pending {
        match p.await {
            Ok(Ok(r)) => println!("async: {}", r.msg_id),
            Ok(Err(e)) => eprintln!("async send failed: {e}"),
            Err(e) => eprintln!("async task failed: {e}"),
        }
    }
    producer.send_with_callback(Message::new(&topic, "callback"), |r| match r {
        Ok(r) => println!("callback: {}", r.msg_id),
        Err(e) => eprintln!("callback send failed: {e}"),
    });

    // Oneway: no answer at all.
    producer
        .send_oneway(Message::new(&topic, "fire and forget"))
        .await?;

    // Batch: one request, one queue, in order.
    let batch = (0..3)
        .map(|i| Message::new(&topic, format!("batch {i}")))
        .collect();
    println!("batch: {}", producer.send_batch(batch).await?.msg_id);

    // Delay level 3 (10 s on a default broker), and a timer 1.5 s from now.
    producer
        .send(Message::new(&topic, "in 10 s").with_delay_level(3))
        .await?;
    producer
        .send(Message::new(&topic, "in 1.5 s").with_delay_ms(1500))
        .await?;

    tokio::time::sleep(std::time::Duration::from_millis(200)).await; // the callback
    producer.shutdown().await;
    Ok(())
}
