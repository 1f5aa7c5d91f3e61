//! One memory budget for a whole server, shared fairly between the users
//! that connect to it.
//!
//! Every byte a peer can make a server hold (its receive buffer, the answers
//! and publications queued for it, the requests its handlers hold) is charged
//! to the connection's [`Account`], and through it to its user's share and to
//! the server's total. Near the limit the server sheds load in this order
//! (`docs/reliability.md`):
//!
//! 1. a connection whose user is over its share, or any connection holding
//!    more than [`PAUSE_ABOVE`] while the server is over its total, is not
//!    read until memory frees ([`Account::should_pause`]);
//! 2. publications that do not fit are dropped for that connection and
//!    counted ([`Account::try_charge`]);
//! 3. new requests are answered `#` [`SERVER_BUSY`](microsocket_core::SERVER_BUSY)
//!    ([`Account::is_over`]);
//! 4. new connections and new subscriptions are refused ([`MemoryBudget::open`],
//!    [`Account::is_over`]).
//!
//! Accounts are per user (peer uid) on UNIX sockets, as dbus-broker accounts
//! its peers, so one user at its limit leaves the others served; connections
//! without credentials (TCP, other streams) share no user account and answer
//! only to the total.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a connection is charged before it receives anything: its structures,
/// its task or thread, its first buffers (about what an idle connection costs
/// either server, rounded up).
pub const CONNECTION_COST: usize = 16 << 10;

/// A connection holding more than this is paused while the server is over
/// its total budget (the connections holding the most are paused first).
pub const PAUSE_ABOVE: usize = 256 << 10;

/// While a connection's new work is refused ([`Account::is_over`]), it reads
/// at most this many bytes at a time: answers are never dropped, and the
/// answers to what one read brings (16/3 of it at worst, "server busy" to
/// 6-byte requests) are all that may pass the budget.
pub const SHORT_READ: usize = 1024;

/// The caps a [`MemoryBudget`] enforces (see [`ServerConfig`](crate::ServerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// Bytes all connections together may make the server hold.
    pub max_memory: usize,
    /// Bytes the connections of one user (peer uid) may make it hold.
    pub max_memory_per_user: usize,
    /// Connections one user may have open at once.
    pub max_connections_per_user: usize,
}

impl Default for MemoryLimits {
    /// 1 GiB in all, three quarters of it for one user, and no cap on a
    /// user's connections besides `ServerConfig::max_connections`: an
    /// application whose clients all run as one user is not limited further,
    /// and one user at its share still leaves a quarter to the others. A bus
    /// shared by several users sets its own shares (`microsocket serve`
    /// does: 128 MiB of 256 MiB, 1,024 connections per user).
    fn default() -> Self {
        Self {
            max_memory: 1 << 30,
            max_memory_per_user: 768 << 20,
            max_connections_per_user: usize::MAX,
        }
    }
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The server is over its total budget.
    #[error("server busy: memory budget exhausted")]
    Busy,
    /// The user already has as many connections as it may.
    #[error("too many connections for this user")]
    TooManyConnections,
}

/// What a budget holds now and what it has shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// Bytes charged now.
    pub used: u64,
    /// The total budget.
    pub limit: u64,
    /// Times load was shed for memory: publications dropped, requests
    /// answered "server busy", connections and subscriptions refused.
    pub shed: u64,
}

/// A server's memory budget; clones share it.
#[derive(Debug, Clone)]
pub struct MemoryBudget(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    limits: LiveLimits,
    used: AtomicUsize,
    shed: AtomicU64,
    users: Mutex<HashMap<u32, Arc<User>>>,
}

/// [`MemoryLimits`] that may change while the server runs
/// ([`MemoryBudget::set_limits`]).
#[derive(Debug)]
struct LiveLimits {
    max_memory: AtomicUsize,
    max_memory_per_user: AtomicUsize,
    max_connections_per_user: AtomicUsize,
}

impl LiveLimits {
    fn new(limits: MemoryLimits) -> Self {
        Self {
            max_memory: AtomicUsize::new(limits.max_memory),
            max_memory_per_user: AtomicUsize::new(limits.max_memory_per_user),
            max_connections_per_user: AtomicUsize::new(limits.max_connections_per_user),
        }
    }

    fn get(&self) -> MemoryLimits {
        MemoryLimits {
            max_memory: self.max_memory.load(Ordering::Relaxed),
            max_memory_per_user: self.max_memory_per_user.load(Ordering::Relaxed),
            max_connections_per_user: self.max_connections_per_user.load(Ordering::Relaxed),
        }
    }

    fn set(&self, limits: MemoryLimits) {
        self.max_memory.store(limits.max_memory, Ordering::Relaxed);
        self.max_memory_per_user
            .store(limits.max_memory_per_user, Ordering::Relaxed);
        self.max_connections_per_user
            .store(limits.max_connections_per_user, Ordering::Relaxed);
    }
}

/// What one user's connections hold together.
#[derive(Debug, Default)]
struct User {
    used: AtomicUsize,
    connections: AtomicUsize,
}

/// One connection's share of a [`MemoryBudget`]: what it holds, charged to
/// its user and to the total. Dropping it gives everything back.
#[derive(Debug)]
pub struct Account {
    budget: MemoryBudget,
    user: Option<(u32, Arc<User>)>,
    held: AtomicUsize,
}

impl MemoryBudget {
    /// A budget with these limits, nothing charged.
    #[must_use]
    pub fn new(limits: MemoryLimits) -> Self {
        Self(Arc::new(Shared {
            limits: LiveLimits::new(limits),
            used: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            users: Mutex::new(HashMap::new()),
        }))
    }

    /// Opens the account of a new connection of `user` (its peer uid, where
    /// the socket tells it), charging it `fixed` bytes (what a connection
    /// costs before it receives anything).
    ///
    /// # Errors
    /// [`Refused`] when the server is over its budget or the user has as
    /// many connections as it may (counted as shed).
    pub fn open(&self, user: Option<u32>, fixed: usize) -> Result<Account, Refused> {
        let shared = &self.0;
        if self.is_over() || shared.used.load(Ordering::Relaxed).saturating_add(fixed) > shared.limits.get().max_memory
        {
            self.count_shed();
            return Err(Refused::Busy);
        }
        let user = match user {
            Some(uid) => {
                // Counted under the lock, so that the last connection of the
                // user closing meanwhile cannot forget the entry it joins.
                let mut users = shared.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let entry = users.entry(uid).or_default().clone();
                if entry.connections.load(Ordering::Relaxed) >= shared.limits.get().max_connections_per_user {
                    drop(users);
                    self.count_shed();
                    return Err(Refused::TooManyConnections);
                }
                entry.connections.fetch_add(1, Ordering::Relaxed);
                Some((uid, entry))
            }
            None => None,
        };
        let account = Account {
            budget: self.clone(),
            user,
            held: AtomicUsize::new(0),
        };
        account.charge(fixed);
        Ok(account)
    }

    /// Counts one act of shedding load.
    pub fn count_shed(&self) {
        self.0.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the server as a whole is near its budget: within the last
    /// sixteenth of it, where new work is refused so that what is already
    /// under way (answers, which are never dropped) still fits.
    #[must_use]
    pub fn is_over(&self) -> bool {
        let limit = self.0.limits.get().max_memory;
        self.0.used.load(Ordering::Relaxed) > limit - limit / 16
    }

    /// The budget now.
    #[must_use]
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            used: self.0.used.load(Ordering::Relaxed) as u64,
            limit: self.0.limits.get().max_memory as u64,
            shed: self.0.shed.load(Ordering::Relaxed),
        }
    }

    /// The limits it enforces.
    #[must_use]
    pub fn limits(&self) -> MemoryLimits {
        self.0.limits.get()
    }

    /// Changes the limits while the server runs (a configuration reload):
    /// what is held stays held; new charges, connections and reads follow the
    /// new limits, and a budget now over its limit sheds load until enough
    /// is given back.
    pub fn set_limits(&self, limits: MemoryLimits) {
        self.0.limits.set(limits);
    }
}

impl Account {
    /// Charges `bytes` the connection now holds, whatever the budget says
    /// (answers, which are never dropped, and buffers already allocated).
    #[inline]
    pub fn charge(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        self.held.fetch_add(bytes, Ordering::Relaxed);
        self.budget.0.used.fetch_add(bytes, Ordering::Relaxed);
        if let Some((_, user)) = &self.user {
            user.used.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Charges `bytes` if they fit the total and the user's share; false (and
    /// counted as shed) if not, and nothing is charged: the caller drops what
    /// it would have held (a publication).
    #[inline]
    pub fn try_charge(&self, bytes: usize) -> bool {
        if !self.fits(bytes) {
            self.budget.count_shed();
            return false;
        }
        self.charge(bytes);
        true
    }

    /// Gives back `bytes` the connection no longer holds.
    #[inline]
    pub fn release(&self, bytes: usize) {
        let bytes = bytes.min(self.held.load(Ordering::Relaxed));
        if bytes == 0 {
            return;
        }
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        self.budget.0.used.fetch_sub(bytes, Ordering::Relaxed);
        if let Some((_, user)) = &self.user {
            user.used.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes the connection holds now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Whether the server, or this connection's user, uses more than half of
    /// its budget: a connection then keeps no memory it can do without (a
    /// receive buffer grown for large frames goes back as soon as it is empty).
    #[must_use]
    pub fn is_tight(&self) -> bool {
        let limits = self.budget.0.limits.get();
        self.budget.0.used.load(Ordering::Relaxed) > limits.max_memory / 2
            || self
                .user
                .as_ref()
                .is_some_and(|(_, u)| u.used.load(Ordering::Relaxed) > limits.max_memory_per_user / 2)
    }

    /// Whether new work from this connection (a request, a subscription)
    /// should be refused: its user is near its share, or the server near its
    /// total (within the last sixteenth).
    #[must_use]
    pub fn is_over(&self) -> bool {
        let share = self.budget.0.limits.get().max_memory_per_user;
        self.budget.is_over()
            || self
                .user
                .as_ref()
                .is_some_and(|(_, u)| u.used.load(Ordering::Relaxed) > share - share / 16)
    }

    /// Whether the connection should not be read for now: its user is over
    /// its share, or the server is over its total and this connection holds
    /// more than [`PAUSE_ABOVE`].
    #[must_use]
    pub fn should_pause(&self) -> bool {
        let limits = self.budget.0.limits.get();
        let user_over = self
            .user
            .as_ref()
            .is_some_and(|(_, u)| u.used.load(Ordering::Relaxed) > limits.max_memory_per_user);
        let past_total = self.budget.0.used.load(Ordering::Relaxed) > limits.max_memory;
        user_over || (past_total && self.held() > PAUSE_ABOVE)
    }

    /// Whether the connection may read more now, with `buffered` bytes of a
    /// frame already in its receive buffer and the buffer needing to grow by
    /// `growth` bytes first (0 if it has room). Between frames it may not
    /// while it [`should_pause`](Account::should_pause); a buffer grows only
    /// if the growth fits the total and the user's share, so a frame arriving
    /// while memory is short waits, holding what it has, until memory frees.
    /// The caller charges the growth once made.
    #[must_use]
    pub fn may_read(&self, buffered: usize, growth: usize) -> bool {
        if buffered == 0 && self.should_pause() {
            return false;
        }
        growth == 0 || self.fits(growth)
    }

    /// How many bytes the connection may read at once now: [`SHORT_READ`]
    /// while its new work is refused, else `wanted`.
    #[must_use]
    pub fn read_limit(&self, wanted: usize) -> usize {
        if self.is_over() {
            wanted.min(SHORT_READ)
        } else {
            wanted
        }
    }

    /// Whether `bytes` more would fit the total and the user's share.
    fn fits(&self, bytes: usize) -> bool {
        let limits = self.budget.0.limits.get();
        let total = self.budget.0.used.load(Ordering::Relaxed).saturating_add(bytes);
        let user = self
            .user
            .as_ref()
            .map_or(0, |(_, u)| u.used.load(Ordering::Relaxed))
            .saturating_add(bytes);
        total <= limits.max_memory && (self.user.is_none() || user <= limits.max_memory_per_user)
    }

    /// The budget it belongs to.
    #[must_use]
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.release(self.held());
        if let Some((uid, user)) = self.user.take() {
            // Under the lock `open` counts connections under, so that a
            // connection of the user opening meanwhile keeps the entry.
            let mut users = self
                .budget
                .0
                .users
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = user.connections.fetch_sub(1, Ordering::Relaxed) == 1;
            if last && user.used.load(Ordering::Relaxed) == 0 {
                users.remove(&uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_change_while_the_server_runs() {
        let budget = MemoryBudget::new(MemoryLimits {
            max_memory: 1 << 20,
            max_memory_per_user: 1 << 20,
            max_connections_per_user: 10,
        });
        let first = budget.open(Some(7), 1000).unwrap();
        let tighter = MemoryLimits {
            max_memory: 4096,
            max_memory_per_user: 4096,
            max_connections_per_user: 1,
        };
        budget.set_limits(tighter);
        assert_eq!(budget.limits(), tighter);
        assert_eq!(budget.stats().limit, 4096);
        assert_eq!(budget.open(Some(7), 1000).unwrap_err(), Refused::TooManyConnections);
        assert!(!first.try_charge(8192), "past the new limit");
        assert!(first.try_charge(1000));
    }

    fn budget() -> MemoryBudget {
        MemoryBudget::new(MemoryLimits {
            max_memory: 1000,
            max_memory_per_user: 600,
            max_connections_per_user: 2,
        })
    }

    #[test]
    fn a_user_at_its_share_leaves_the_others_served() {
        let b = budget();
        let greedy = b.open(Some(1000), 100).unwrap();
        assert!(greedy.try_charge(500));
        assert!(!greedy.try_charge(1), "past the user's share of 600");
        assert!(greedy.is_over(), "new work is refused near the share");
        assert!(!greedy.should_pause(), "reading pauses only past it");
        // Answers are charged whatever the budget says; then it is past.
        greedy.charge(50);
        assert!(greedy.should_pause());
        let other = b.open(Some(1001), 100).unwrap();
        assert!(other.try_charge(200));
        assert!(other.is_over(), "the server as a whole is near its total");
        assert!(!other.should_pause(), "its user is within its share");
        // The total (1000) holds for everyone: 650 + 300 + 200 > 1000.
        assert!(!other.try_charge(200));
        assert_eq!(b.stats().used, 950);
        drop(greedy);
        assert_eq!(b.stats().used, 300);
        assert!(other.try_charge(200));
    }

    #[test]
    fn connections_are_capped_per_user_and_refused_when_full() {
        let b = budget();
        let _a = b.open(Some(7), 10).unwrap();
        let second = b.open(Some(7), 10).unwrap();
        assert_eq!(b.open(Some(7), 10).unwrap_err(), Refused::TooManyConnections);
        drop(second);
        let _again = b.open(Some(7), 10).unwrap();
        let big = b.open(None, 10).unwrap();
        big.charge(PAUSE_ABOVE);
        assert!(b.is_over());
        assert_eq!(b.open(Some(8), 10).unwrap_err(), Refused::Busy);
        assert!(big.should_pause(), "over the total and holding the most");
        drop(big);
        assert!(!b.is_over());
        assert_eq!(b.stats().shed, 2);
    }

    #[test]
    fn a_receive_buffer_grows_only_within_the_budget() {
        let b = budget();
        let reader = b.open(Some(1), 100).unwrap();
        assert!(reader.may_read(0, 0));
        assert!(reader.may_read(10, 400), "600 of the user's 600");
        assert!(!reader.may_read(10, 501), "past the user's share");
        let other = b.open(Some(2), 100).unwrap();
        other.charge(500);
        assert!(!reader.may_read(10, 400), "past the total of 1000");
        assert!(reader.may_read(10, 0), "a buffer with room reads on");
        assert!(reader.may_read(0, 0), "between frames, within its share");
        other.charge(100);
        assert!(!other.may_read(0, 0), "past its share: paused between frames");
        assert!(other.may_read(1, 0), "but finishes a frame within its buffer");
        assert_eq!(b.stats().shed, 0, "asking sheds nothing");
    }
}
