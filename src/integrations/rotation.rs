//! Encryption key rotation: at boot, every secret still sealed with the previous key
//! (`BRIDGE_ENCRYPTION_KEY_PREVIOUS`) is re-sealed with the current one. Rotating is then: set the new key
//! as `BRIDGE_ENCRYPTION_KEY` and the old one as `BRIDGE_ENCRYPTION_KEY_PREVIOUS`, restart once, and drop
//! the previous key at the next restart (docs/operations.md).

use sea_orm::DatabaseConnection;

use super::{open_sealed, sealed};
use crate::crypto::Sealer;
use crate::error::AppError;
use crate::store;

/// Re-seals what needs it (before the bridge reports ready). Returns how many integrations were re-sealed.
pub async fn reseal_all(db: &DatabaseConnection, sealer: &Sealer) -> Result<usize, AppError> {
    let mut count = 0;
    for model in store::integrations::list(db, None).await? {
        let columns = [
            Some(&model.instance_token_sealed),
            Some(&model.chatwoot_token_sealed),
            Some(&model.webhook_secret_sealed),
            model.signing_secret_sealed.as_ref(),
        ];
        if !columns.into_iter().flatten().any(|value| sealer.needs_reseal(value)) {
            continue;
        }
        let reseal = |value: &str, column: &str| -> Result<String, AppError> {
            let clear = open_sealed(sealer, value, &model.id, column)?;
            sealer.seal(&clear, &model.id, column).map_err(|e| AppError::Internal { detail: e.to_string() })
        };
        let signing = model.signing_secret_sealed.as_deref().map(|v| reseal(v, sealed::SIGNING_SECRET)).transpose()?;
        store::integrations::set_sealed(
            db,
            &model.id,
            reseal(&model.instance_token_sealed, sealed::INSTANCE_TOKEN)?,
            reseal(&model.chatwoot_token_sealed, sealed::CHATWOOT_TOKEN)?,
            reseal(&model.webhook_secret_sealed, sealed::WEBHOOK_SECRET)?,
            signing,
        )
        .await?;
        count += 1;
    }
    Ok(count)
}
