//! Queries on the `integrations` table.

pub use entity::integration::Status;
use entity::integration::{ActiveModel, Column, Entity, Model};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseConnection, EntityTrait as _, IntoActiveModel as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _, SqlErr,
};

use super::StoreError;

pub async fn find(db: &DatabaseConnection, id: &str) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find_by_id(id.to_owned()).one(db).await?)
}

pub async fn find_by_instance(db: &DatabaseConnection, instance: &str) -> Result<Option<Model>, StoreError> {
    Ok(Entity::find().filter(Column::Instance.eq(instance)).one(db).await?)
}

/// All integrations (oldest first), or the one of `instance`.
pub async fn list(db: &DatabaseConnection, instance: Option<&str>) -> Result<Vec<Model>, StoreError> {
    let mut query = Entity::find().order_by_asc(Column::CreatedAt).order_by_asc(Column::Id);
    if let Some(instance) = instance {
        query = query.filter(Column::Instance.eq(instance));
    }
    Ok(query.all(db).await?)
}

/// Inserts a new integration; a second one for the same instance is refused with `InstanceTaken`.
pub async fn insert(db: &DatabaseConnection, model: Model) -> Result<Model, StoreError> {
    let instance = model.instance.clone();
    model.into_active_model().reset_all().insert(db).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::InstanceTaken(instance),
        _ => StoreError::Db(e),
    })
}

/// Writes every column of `model` over the stored row.
pub async fn replace(db: &DatabaseConnection, model: Model) -> Result<Model, StoreError> {
    let active: ActiveModel = model.into_active_model().reset_all();
    Ok(active.update(db).await?)
}

/// Sets `status` and `last_error` (and `updated_at`). Returns the updated row, `None` if it is gone.
pub async fn set_status(
    db: &DatabaseConnection,
    id: &str,
    status: Status,
    last_error: &str,
) -> Result<Option<Model>, StoreError> {
    let Some(model) = find(db, id).await? else { return Ok(None) };
    let mut active = model.into_active_model();
    active.status = sea_orm::Set(status.as_str().to_owned());
    active.last_error = sea_orm::Set(last_error.to_owned());
    active.updated_at = sea_orm::Set(chrono::Utc::now());
    Ok(Some(active.update(db).await?))
}

/// Sets `status`/`last_error` only while the row is in `expected` status (an actor must not turn a paused
/// integration into `error`). Returns whether the row changed.
pub async fn set_status_if(
    db: &DatabaseConnection,
    id: &str,
    expected: Status,
    status: Status,
    last_error: &str,
) -> Result<bool, StoreError> {
    let result = Entity::update_many()
        .col_expr(Column::Status, sea_orm::sea_query::Expr::value(status.as_str()))
        .col_expr(Column::LastError, sea_orm::sea_query::Expr::value(last_error))
        .col_expr(Column::UpdatedAt, sea_orm::sea_query::Expr::value(chrono::Utc::now()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(expected.as_str()))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Deletes the integration. Returns whether a row was removed.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<bool, StoreError> {
    Ok(Entity::delete_by_id(id.to_owned()).exec(db).await?.rows_affected > 0)
}

/// Ids of every integration in `status`.
pub async fn ids_with_status(db: &DatabaseConnection, status: Status) -> Result<Vec<String>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Status.eq(status.as_str()))
        .order_by_asc(Column::CreatedAt)
        .into_tuple::<String>()
        .all(db)
        .await?)
}

/// `(status, count)` for every status present.
pub async fn count_by_status(db: &DatabaseConnection) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(Entity::find()
        .select_only()
        .column(Column::Status)
        .column_as(Column::Id.count(), "n")
        .group_by(Column::Status)
        .into_tuple::<(String, i64)>()
        .all(db)
        .await?)
}

/// Rewrites the sealed columns of one integration (key rotation). Only those columns change.
pub async fn set_sealed(
    db: &DatabaseConnection,
    id: &str,
    instance_token: String,
    chatwoot_token: String,
    webhook_secret: String,
    signing_secret: Option<String>,
) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(id.to_owned()),
        instance_token_sealed: sea_orm::Set(instance_token),
        chatwoot_token_sealed: sea_orm::Set(chatwoot_token),
        webhook_secret_sealed: sea_orm::Set(webhook_secret),
        signing_secret_sealed: sea_orm::Set(signing_secret),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}

/// Replaces the sealed signing secret (Chatwoot's inbox secret changed).
pub async fn set_signing_secret(db: &DatabaseConnection, id: &str, sealed: String) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(id.to_owned()),
        signing_secret_sealed: sea_orm::Set(Some(sealed)),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}

/// Records the Chatwoot version last read from `GET /api`.
pub async fn set_chatwoot_version(db: &DatabaseConnection, id: &str, version: &str) -> Result<(), StoreError> {
    let row = ActiveModel {
        id: sea_orm::Unchanged(id.to_owned()),
        chatwoot_version: sea_orm::Set(Some(version.to_owned())),
        ..Default::default()
    };
    row.update(db).await?;
    Ok(())
}
