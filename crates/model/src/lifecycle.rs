//! The instance and volume lifecycles, each as one transition function over a state enum.

use andromede_api::v1::{InstanceState as S, VolumeState as V};

/// What a user asks of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Reboot,
    Delete,
}

/// The outcome of a request against the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: the instance moves to this state and the host converges it.
    Queued(S),
    /// Already satisfied (or about to be): nothing changes.
    AlreadySatisfied,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} {kind} that is {from}{hint}")]
pub struct InvalidTransition {
    pub action: &'static str,
    pub kind: &'static str,
    pub from: String,
    pub hint: &'static str,
}

/// States in which an instance no longer exists on any host.
pub const TERMINAL: &[S] = &[S::Deleted];
/// States in which an instance holds host resources and quota.
pub fn holds_resources(s: S) -> bool {
    !matches!(s, S::Deleted | S::Pending)
}

pub fn state_name(s: S) -> String {
    s.as_str_name()
        .trim_start_matches("INSTANCE_STATE_")
        .to_ascii_lowercase()
}

/// The one transition function for user requests.
pub fn request(from: S, action: Action) -> Result<Outcome, InvalidTransition> {
    use Outcome::*;
    let deny = |a: &'static str| {
        Err(InvalidTransition {
            action: a,
            kind: "an instance",
            from: state_name(from),
            hint: "",
        })
    };
    match action {
        Action::Start => match from {
            S::Running | S::Starting | S::Pending | S::Scheduled | S::Creating | S::Rebooting => {
                Ok(AlreadySatisfied)
            }
            S::Stopped | S::Stopping => Ok(Queued(S::Starting)),
            _ => deny("start"),
        },
        Action::Stop => match from {
            S::Stopped | S::Stopping => Ok(AlreadySatisfied),
            S::Running | S::Starting | S::Rebooting => Ok(Queued(S::Stopping)),
            _ => deny("stop"),
        },
        Action::Reboot => match from {
            S::Rebooting => Ok(AlreadySatisfied),
            S::Running => Ok(Queued(S::Rebooting)),
            _ => deny("reboot"),
        },
        Action::Delete => match from {
            S::Deleting | S::Deleted => Ok(AlreadySatisfied),
            _ => Ok(Queued(S::Deleting)),
        },
    }
}

/// Applies what a host reports it observed. Returns the new state, or `None` when the report is
/// stale for the current state (for example a late "running" after a delete was requested).
pub fn observe(current: S, observed: S) -> Option<S> {
    match (current, observed) {
        (a, b) if a == b => None,
        // A delete in progress only ever ends in DELETED (or ERROR that a retry clears).
        (S::Deleting, S::Deleted) => Some(S::Deleted),
        (S::Deleting, _) => None,
        (S::Deleted, _) => None,
        (S::Stopping, S::Running) | (S::Starting, S::Stopped) => None,
        (_, S::Error) | (_, S::HostLost) => Some(observed),
        (
            S::Scheduled | S::Creating | S::Starting | S::Rebooting | S::HostLost | S::Error,
            S::Running | S::Creating,
        ) => Some(observed),
        (S::Stopping | S::HostLost | S::Error, S::Stopped) => Some(S::Stopped),
        (S::Running, S::Stopped) => Some(S::Stopped),
        _ => None,
    }
}

/// Applies what a host reports of a volume: the new state, or `None` when the report is stale.
pub fn observe_volume(current: V, observed: V) -> Option<V> {
    match (current, observed) {
        (a, b) if a == b => None,
        (V::Deleting, V::Deleted) => Some(V::Deleted),
        (V::Deleting, _) | (V::Deleted, _) => None,
        (V::Creating | V::Error, V::Available) => Some(V::Available),
        // An attach that completed, or one the host could not do (back to available).
        (V::Attaching, V::InUse | V::Available) => Some(observed),
        // A detach that completed, or one the host could not do (still in use).
        (V::Detaching, V::Available | V::InUse) => Some(observed),
        (_, V::Error) => Some(V::Error),
        _ => None,
    }
}

/// Volume requests: attach, detach and delete, as one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeAction {
    Attach,
    Detach,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeOutcome {
    Queued(V),
    AlreadySatisfied,
}

pub fn volume_state_name(s: V) -> String {
    s.as_str_name()
        .trim_start_matches("VOLUME_STATE_")
        .to_ascii_lowercase()
}

pub fn volume_request(from: V, action: VolumeAction) -> Result<VolumeOutcome, InvalidTransition> {
    let deny = |a: &'static str, hint: &'static str| {
        Err(InvalidTransition {
            action: a,
            kind: "a volume",
            from: volume_state_name(from),
            hint,
        })
    };
    match action {
        VolumeAction::Attach => match from {
            V::Available => Ok(VolumeOutcome::Queued(V::Attaching)),
            _ => deny("attach", ""),
        },
        VolumeAction::Detach => match from {
            V::InUse | V::Attaching => Ok(VolumeOutcome::Queued(V::Detaching)),
            V::Available | V::Detaching => Ok(VolumeOutcome::AlreadySatisfied),
            _ => deny("detach", ""),
        },
        VolumeAction::Delete => match from {
            V::Deleting | V::Deleted => Ok(VolumeOutcome::AlreadySatisfied),
            V::InUse | V::Attaching | V::Detaching => deny("delete", " (detach it first)"),
            _ => Ok(VolumeOutcome::Queued(V::Deleting)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        assert_eq!(
            request(S::Running, Action::Stop),
            Ok(Outcome::Queued(S::Stopping))
        );
        assert_eq!(
            request(S::Stopped, Action::Stop),
            Ok(Outcome::AlreadySatisfied)
        );
        assert!(request(S::Stopped, Action::Reboot).is_err());
        assert!(request(S::Deleting, Action::Start).is_err());
        assert_eq!(
            request(S::Error, Action::Delete),
            Ok(Outcome::Queued(S::Deleting))
        );
        assert_eq!(
            request(S::Deleted, Action::Delete),
            Ok(Outcome::AlreadySatisfied)
        );
    }

    #[test]
    fn observations() {
        assert_eq!(observe(S::Scheduled, S::Running), Some(S::Running));
        assert_eq!(observe(S::Deleting, S::Running), None);
        assert_eq!(observe(S::Deleting, S::Deleted), Some(S::Deleted));
        assert_eq!(observe(S::Stopping, S::Stopped), Some(S::Stopped));
        assert_eq!(observe(S::Stopping, S::Running), None);
    }

    #[test]
    fn volume_requests() {
        assert_eq!(
            volume_request(V::Available, VolumeAction::Attach),
            Ok(VolumeOutcome::Queued(V::Attaching))
        );
        assert_eq!(
            volume_request(V::InUse, VolumeAction::Detach),
            Ok(VolumeOutcome::Queued(V::Detaching))
        );
        assert!(volume_request(V::Attaching, VolumeAction::Delete).is_err());
        assert_eq!(observe_volume(V::Attaching, V::InUse), Some(V::InUse));
        assert_eq!(
            observe_volume(V::Detaching, V::Available),
            Some(V::Available)
        );
        assert_eq!(observe_volume(V::Deleting, V::Available), None);
        assert!(volume_request(V::InUse, VolumeAction::Attach).is_err());
        assert!(volume_request(V::InUse, VolumeAction::Delete).is_err());
        assert_eq!(
            volume_request(V::Available, VolumeAction::Detach),
            Ok(VolumeOutcome::AlreadySatisfied)
        );
    }
}
