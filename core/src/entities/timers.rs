use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "timers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: crate::timers::TimerKind,
    pub subject_id: Uuid,
    pub due_at: DateTimeUtc,
    pub status: crate::timers::TimerStatus,
    pub attempts: i32,
    pub lease_until: Option<DateTimeUtc>,
    pub fired_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
