//! Domain types. Each value is a newtype with a parse constructor: once built, it is valid.

mod click;
mod ids;
mod link;
mod review;
mod short_code;
mod target_url;
mod timestamp;
mod user;

pub use click::{
    BatchOutcome, BreakdownDelta, ClickBatch, ClickEvent, ClickMethod, Dimension, Granularity,
    HourlyCounts, HourlyDelta, MAX_CAPTURED_HEADER_BYTES, PendingWindow, StoredClick,
    TrendingDelta, VisitorHour, capture_header,
};
pub use ids::{ApiKeyId, ClickId, LinkId, UserId};
pub use link::{
    ChangeKind, Link, LinkChange, LinkDomain, LinkDomainError, LinkFieldError, LinkPatch,
    LinkState, MAX_TAGS_PER_LINK, MAX_TITLE_CHARS, NewLink, RedirectStatus, Tag, parse_title,
};
pub use review::{FraudReview, ReviewCandidate, ReviewState, ReviewThresholds};
pub(crate) use short_code::is_code_byte;
pub use short_code::{
    DEFAULT_GENERATED_LEN, MAX_CODE_LEN, MIN_CUSTOM_CODE_LEN, RESERVED_CODES, ShortCode,
    ShortCodeError, is_reserved,
};
pub use target_url::{
    MAX_TARGET_URL_BYTES, TargetPolicy, TargetUrl, TargetUrlError, has_encoded_control,
    is_public_ip,
};
pub use timestamp::Timestamp;
pub use user::{
    ApiKey, AuditEntry, BlockedDomain, Email, EmailError, NewApiKey, NewAuditEntry, NewUser,
    RefreshToken, Role, RotateOutcome, TokenHash, User,
};
