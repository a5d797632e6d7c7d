//! The `afterPosition` argument of queries and subscriptions: read-your-writes over the
//! asynchronous projections.

use std::time::Duration;

use opencity_projections::consistency::{self, WaitError, DEFAULT_WAIT, MAX_WAIT};

use super::ApiState;
use crate::errors::ApiError;

/// Waits until the projections have applied global position `after_position` (taken from a
/// mutation's result), at most `wait_timeout_ms` milliseconds (5 s by default, 30 s at most).
/// Without a position it returns at once.
pub(crate) async fn wait_for_position(
    state: &ApiState,
    after_position: Option<i64>,
    wait_timeout_ms: Option<i32>,
) -> Result<(), ApiError> {
    let timeout = match wait_timeout_ms {
        None => DEFAULT_WAIT,
        Some(ms) if ms >= 0 && Duration::from_millis(ms as u64) <= MAX_WAIT => {
            Duration::from_millis(ms as u64)
        }
        Some(ms) => {
            return Err(ApiError::new(
                "INVALID_WAIT_TIMEOUT",
                format!(
                    "Поле «waitTimeoutMs»: значение {ms} вне допустимого диапазона. Укажите от 0 до {} миллисекунд.",
                    MAX_WAIT.as_millis()
                ),
            ))
        }
    };
    let Some(position) = after_position else {
        return Ok(());
    };
    if position < 0 {
        return Err(ApiError::new(
            "INVALID_POSITION",
            format!(
                "Поле «afterPosition»: позиция {position} отрицательна. Укажите позицию из поля position ответа мутации."
            ),
        ));
    }
    consistency::wait_for_position(&state.read_model, &state.store, position, timeout)
        .await
        .map(|_| ())
        .map_err(|error| match error {
            WaitError::NotWritten { position, head } => ApiError::new(
                "POSITION_NOT_WRITTEN",
                format!(
                    "Поле «afterPosition»: позиции {position} ещё нет в журнале (последняя записанная — {head}). \
                     Укажите позицию из поля position ответа мутации."
                ),
            ),
            WaitError::Timeout { position, projected, waited } => ApiError::new(
                "POSITION_WAIT_TIMEOUT",
                format!(
                    "Проекции не успели учесть позицию {position} журнала за {} мс (учтено до позиции {projected}). \
                     Повторите запрос позже или увеличьте waitTimeoutMs (не больше {} мс).",
                    waited.as_millis(),
                    MAX_WAIT.as_millis()
                ),
            ),
            WaitError::Store(error) => {
                tracing::error!(error.cause_chain = ?error, "waiting for a log position failed");
                ApiError::new(
                    "STORE_UNAVAILABLE",
                    "Хранилище событий недоступно. Повторите запрос позже; если ошибка повторяется, сообщите администратору.",
                )
            }
        })
}
