//! Cleanup that runs whatever the test's outcome: a database dropped only
//! when the test passes would pile up on the shared server with every
//! failure.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// Awaits `test`, then `cleanup` even if `test` panicked; a panic then goes
/// on unwinding, so the test still fails with its own message.
pub async fn run_cleaned(test: impl Future<Output = ()>, cleanup: impl Future<Output = ()>) {
    let outcome = AssertUnwindSafe(test).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Each named test `async fn name(env: Env)` of the calling module twice, as
/// `postgres::name` and `sqlite::name`, on a two-thread tokio runtime.
///
/// The caller provides `Kind` (with `Postgres` and `Sqlite`) and
/// `async fn run(kind: Kind, test: F)` next to the invocation, usually built
/// on [`run_cleaned`]; its crate needs `tokio` as a (dev-)dependency.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run(super::Kind::Postgres, super::$test).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run(super::Kind::Sqlite, super::$test).await;
                }
            )+
        }
    };
}
