//! The fraud review queue: links whose traffic crossed a review threshold.

use serde::Serialize;

use super::ids::{LinkId, UserId};
use super::timestamp::Timestamp;

/// Where a review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    /// Waiting for an administrator.
    Open,
    /// Looked at and found acceptable; reopened only by new evidence an hour later.
    Dismissed,
    /// Fraud confirmed: the flagged clicks were taken out of the aggregates.
    Confirmed,
}

impl ReviewState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Dismissed => "dismissed",
            Self::Confirmed => "confirmed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "dismissed" => Some(Self::Dismissed),
            "confirmed" => Some(Self::Confirmed),
            _ => None,
        }
    }
}

/// A link in the review queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FraudReview {
    pub link_id: LinkId,
    pub state: ReviewState,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    /// Clicks and suspicious clicks in the hour that last updated the review.
    pub hour_total: u64,
    pub hour_suspicious: u64,
    /// Clicks flagged as part of a burst since the review opened.
    pub burst_clicks: u64,
    /// Flagged clicks confirmed and taken out of the aggregates so far.
    pub confirmed_clicks: u64,
    pub decided_by: Option<UserId>,
    pub decided_at: Option<Timestamp>,
    pub note: Option<String>,
}

/// Thresholds that put a link in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewThresholds {
    /// At least this many clicks in the hour before the share counts...
    pub min_clicks: u64,
    /// ...of which at least this percentage are suspicious.
    pub suspicious_percent: u64,
}

/// A link with suspicious or burst clicks in a written batch, for the queue to consider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewCandidate {
    pub link_id: LinkId,
    /// The UTC hour of the batch's clicks on this link.
    pub hour: Timestamp,
    pub burst_clicks: u64,
}
