//! Small async helpers for glommio tasks.

use std::future::Future;
use std::time::Duration;

/// Runs `fut` for at most `limit`; `None` when the time ran out first.
pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}
