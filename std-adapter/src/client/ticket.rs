//! Requests in flight without a thread each: send now, collect the answer
//! later, in any order.

use super::state::*;
use super::waiting::take_done;
use microsocket_core::RequestId;
use microsocket_host::{Result, Values};
use std::time::{Duration, Instant};

/// A request sent and not yet collected: [`Ticket::wait`] for its answer.
///
/// One thread can hold hundreds of tickets (up to [`MAX_IN_FLIGHT`] per
/// connection) and collect them in any order; answers arriving meanwhile are
/// kept for their tickets. Dropping a ticket without waiting cancels the
/// request: its slot is freed and a late answer is discarded.
///
/// ```no_run
/// # fn f(client: microsocket_std::Client) -> microsocket_std::Result<()> {
/// let tickets = (0..100)
///     .map(|i| client.send("ECHO", [i.to_string()]))
///     .collect::<microsocket_std::Result<Vec<_>>>()?;
/// for ticket in tickets.into_iter().rev() {
///     println!("{:?}", ticket.wait()?);
/// }
/// # Ok(()) }
/// ```
#[must_use = "a ticket's answer is collected with `wait`; dropping it cancels the request"]
pub struct Ticket {
    client: Client,
    id: RequestId,
    deadline: Option<Instant>,
    collected: bool,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl Ticket {
    /// Waits for the answer until the request's deadline (the client's
    /// `request_timeout`, counted from when it was sent).
    ///
    /// # Errors
    /// As [`Client::request`].
    pub fn wait(mut self) -> Result<Values> {
        self.collected = true;
        self.client.wait_response(self.id, self.deadline)
    }

    /// Waits for the answer for at most `timeout` from now, whatever the
    /// request's own deadline.
    ///
    /// # Errors
    /// As [`Client::request`]; [`Error::TimedOut`](crate::Error::TimedOut)
    /// cancels the request.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<Values> {
        self.collected = true;
        self.client.wait_response(self.id, Some(Instant::now() + timeout))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.collected {
            return;
        }
        let inner = &self.client.inner;
        let mut st = inner.lock_state();
        if take_done(&mut st, self.id).is_none() {
            let slot = usize::from(self.id.slot());
            if st.slots[slot] == Some(self.id) {
                st.slots[slot] = None;
                st.ticketed[slot] = false;
                st.protocol.cancel(self.id);
            }
        }
        inner.release_and_flush(st);
    }
}

/// Requests gathered to be written at once: [`Client::batch`].
///
/// Each [`Batch::request`] takes a request slot; [`Batch::send`] writes them
/// all with one system call (or a few) and hands back their tickets, in the
/// order they were added. A batch dropped unsent writes its requests anyway
/// and cancels them.
#[must_use = "a batch is written by `send`"]
#[derive(Debug)]
pub struct Batch<'a> {
    client: &'a Client,
    tickets: Vec<Ticket>,
}

impl Batch<'_> {
    /// Adds a request.
    ///
    /// # Errors
    /// As [`Client::send`]: [`Error::InflightFull`](crate::Error::InflightFull)
    /// once the batch and the requests already in flight hold every slot.
    pub fn request<I>(&mut self, command: impl AsRef<[u8]>, args: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let ticket = self.client.ticket(command.as_ref(), args, Sending::Batched)?;
        self.tickets.push(ticket);
        Ok(())
    }

    /// Requests added so far.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    /// Whether none were added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    /// Writes the requests; their tickets, in the order they were added.
    ///
    /// # Errors
    /// As [`Client::request`] when writing fails (the tickets then answer
    /// [`Error::Closed`](crate::Error::Closed) too).
    pub fn send(mut self) -> Result<Vec<Ticket>> {
        let tickets = std::mem::take(&mut self.tickets);
        self.client.inner.flush_pending(self.client.inner.lock_state())?;
        Ok(tickets)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if !self.tickets.is_empty() {
            let _ = self.client.inner.flush_pending(self.client.inner.lock_state());
        }
    }
}

impl Client {
    /// Sends a request without waiting: its [`Ticket`] collects the answer
    /// later. The request's deadline (the client's `request_timeout`) counts
    /// from now.
    ///
    /// # Errors
    /// [`Error::InflightFull`](crate::Error::InflightFull) when every request
    /// slot is taken, and as [`Client::request`] for sending.
    pub fn send<I>(&self, command: impl AsRef<[u8]>, args: I) -> Result<Ticket>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        self.ticket(command.as_ref(), args, Sending::Ticket)
    }

    /// A [`Batch`] of requests to write at once.
    ///
    /// ```no_run
    /// # fn f(client: microsocket_std::Client) -> microsocket_std::Result<()> {
    /// let mut batch = client.batch();
    /// for i in 0..200 {
    ///     batch.request("ECHO", [i.to_string()])?;
    /// }
    /// for answer in client.wait_all(batch.send()?) {
    ///     println!("{:?}", answer?);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn batch(&self) -> Batch<'_> {
        Batch {
            client: self,
            tickets: Vec::new(),
        }
    }

    /// Waits for every ticket's answer; the answers, in the tickets' order.
    pub fn wait_all(&self, tickets: impl IntoIterator<Item = Ticket>) -> Vec<Result<Values>> {
        tickets.into_iter().map(Ticket::wait).collect()
    }

    fn ticket<I>(&self, command: &[u8], args: I, sending: Sending) -> Result<Ticket>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
        I::IntoIter: Clone,
    {
        let deadline = self.inner.config.request_timeout.map(|t| Instant::now() + t);
        let id = self.send_request(command, args, sending)?;
        Ok(Ticket {
            client: self.clone(),
            id,
            deadline,
            collected: false,
        })
    }
}
