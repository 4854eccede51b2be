//! Background work: registration, offset persistence and client expiry (shard 0).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::shard::ShardCtx;

/// Broker-wide periodic tasks, run by shard 0.
pub fn start_shard0(ctx: Rc<ShardCtx>, register_rx: flume::Receiver<()>) {
    let c = ctx.clone();
    glommio::spawn_local(async move {
        let interval = Duration::from_millis(c.broker.config.register_broker_interval_ms);
        loop {
            futures_lite::future::or(
                async {
                    glommio::timer::sleep(interval).await;
                },
                async {
                    let _ = register_rx.recv_async().await;
                    // Coalesce a burst of topic changes into one registration.
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                    while register_rx.try_recv().is_ok() {}
                },
            )
            .await;
            if c.broker.shutting_down.load(Ordering::Relaxed) {
                return;
            }
            crate::register::register_all(&c.broker).await;
        }
    })
    .detach();

    let c = ctx.clone();
    glommio::spawn_local(async move {
        let interval = Duration::from_millis(c.broker.config.consumer_offset_persist_interval_ms);
        loop {
            glommio::timer::sleep(interval).await;
            if let Err(e) = c.broker.meta.offsets.persist() {
                tracing::error!(error = %e, "cannot persist consumer offsets");
            }
        }
    })
    .detach();

    glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(Duration::from_secs(10)).await;
            let broker = &ctx.broker;
            let deadline = broker
                .now_ms()
                .saturating_sub(broker.config.client_channel_expired_ms);
            let changes = broker.clients.expire(deadline);
            crate::processor::consumer::notify_changes(&ctx, changes);
        }
    })
    .detach();
}

/// Per-shard periodic tasks (none yet beyond what the store runs itself).
pub fn start_every_shard(_ctx: Rc<ShardCtx>) {}
