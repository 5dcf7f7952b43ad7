//! Every server function, and the roles that may call it.

use app::auth::Role;

/// One server function: its endpoint, which roles may call it, and how to build a call.
pub(super) struct Case {
    pub(super) endpoint: &'static str,
    pub(super) allowed: Allowed,
    /// History entries an allowed call writes (a call that starts work in the
    /// background writes them when it ends; the matrix waits for them).
    pub(super) records: i64,
}

/// Which roles may do something.
pub(super) type Allowed = fn(Role) -> bool;

pub(super) fn any(_: Role) -> bool {
    true
}
pub(super) fn admins(role: Role) -> bool {
    role == Role::Admin
}
pub(super) fn managers(role: Role) -> bool {
    matches!(role, Role::Manager | Role::Admin)
}
pub(super) fn operators(role: Role) -> bool {
    matches!(role, Role::Operator | Role::Admin)
}

pub(super) const CASES: &[Case] = &[
    // Every button that starts or stops a job posts to these two (the job by name).
    Case {
        endpoint: "jobs/start",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "jobs/cancel",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "auth/me",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "overview/posture",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/search",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/entry",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "history/verify",
        allowed: managers,
        records: 1,
    },
    Case {
        endpoint: "history/note",
        allowed: any,
        records: 1,
    },
    // The incident and its first status snapshot.
    Case {
        endpoint: "history/incident",
        allowed: any,
        records: 2,
    },
    Case {
        endpoint: "history/resolve",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "alerts/counts",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/open",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/resolved",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/detail",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "alerts/acknowledge",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/resolve",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/note",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/silence",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "alerts/unsilence",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "queues/overview",
        allowed: any,
        records: 0,
    },
    // The run continues in the background; the matrix waits for it before counting.
    Case {
        endpoint: "backups/overview",
        allowed: any,
        records: 0,
    },
    // The backup job: a backup and a verification of each store.
    Case {
        endpoint: "backups/verify",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "backups/plan",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "backups/restore",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "backups/rollback",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "backups/pitr",
        allowed: any,
        records: 0,
    },
    // `backups/pitr-restore` is not here: its allowed call is a real restore of the
    // whole cluster, minutes under the full suite. Its gates are proved in
    // backups/pitr.rs, the admin's call reaching the request's own check.
    Case {
        endpoint: "backups/side-stop",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "crons/overview",
        allowed: any,
        records: 0,
    },
    // In the background too; the job (expiry, with nothing to expire) writes no entry of
    // its own, so the run's own "ran by hand" entry is the one.
    Case {
        endpoint: "settings/cron-secret",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "settings/cron-secret/rotate",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/cron-secret/end-grace",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/ingest-keys",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "settings/ingest-keys/usage",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "settings/ingest-keys/create",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/ingest-keys/revoke",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users",
        allowed: admins,
        records: 0,
    },
    Case {
        endpoint: "settings/users/add",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users/role",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/users/disabled",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "drills/overview",
        allowed: any,
        records: 0,
    },
    // In the background: each store's restore into its throwaway database, then the
    // drill's own entry.
    Case {
        endpoint: "drills/tabletop",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "drills/objectives",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "incidents/mode",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "incidents/snapshot",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "incidents/key-snapshot",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "incidents/freeze",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "incidents/tick",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "incidents/owner",
        allowed: any,
        records: 1,
    },
    Case {
        endpoint: "dlq/overview",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "migrations/overview",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "migrations/change",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "dlq/dry-run",
        allowed: operators,
        records: 0,
    },
    // In the background: the redrive's entry when it finishes.
    Case {
        endpoint: "dlq/redrive",
        allowed: operators,
        records: 1,
    },
    Case {
        endpoint: "dlq/redrive-status",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "dlq/purge",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "dlq/delivery",
        allowed: any,
        records: 0,
    },
    // The endpoint's re-enabling, then its redrive's entry when that finishes.
    Case {
        endpoint: "dlq/recover",
        allowed: operators,
        records: 2,
    },
    Case {
        endpoint: "settings/webhooks",
        allowed: any,
        records: 0,
    },
    Case {
        endpoint: "settings/webhooks/create",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/webhooks/enabled",
        allowed: admins,
        records: 1,
    },
    Case {
        endpoint: "settings/webhooks/delete",
        allowed: admins,
        records: 1,
    },
    // Last: it changes the caller's own password (the session stays signed in).
    Case {
        endpoint: "auth/password",
        allowed: any,
        records: 1,
    },
];
// Not in the matrix, because they are for people who are not signed in yet, and have
// tests of their own in auth.rs: auth/sign-in, auth/sign-out, auth/setup-status, auth/setup.
