//! The relay thread, `control-relay`: it waits (crossbeam `Select`) on the
//! channels of `logs -f` followers that have taken all they were sent, and
//! when one has a line, hands the connection's token to the poll thread and
//! wakes it. Started with the first follower.
//!
//! What it must never do: take a message from a follower's channel (the
//! poll thread does, when its client has room), or hold a socket.

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};

use super::KEEP_CONNS;
use crate::output::LogEntry;
use crate::polling::Wake;

/// What the poll thread asks the relay: watch follower `token`'s channel of
/// new lines, or stop watching it (the connection is gone).
pub(super) enum Watch {
    Lines(u64, Receiver<LogEntry>),
    Forget(u64),
}

/// The relay thread: wait until a watched channel has a message (or has
/// ended), then pass its token to the poll thread and wake it. A channel is
/// watched once: the poll thread watches it again if it wants more.
pub(super) fn relay(orders: &Receiver<Watch>, ready: &Sender<u64>, wake: &Wake) {
    let mut watched: Vec<(u64, Receiver<LogEntry>)> = Vec::new();
    loop {
        let index = {
            let mut select = Select::new();
            select.recv(orders);
            for (_, channel) in &watched {
                select.recv(channel);
            }
            // Never empty: `orders` is always there.
            select.ready()
        };
        if index == 0 {
            loop {
                match orders.try_recv() {
                    Ok(Watch::Lines(token, r)) => watched.push((token, r)),
                    Ok(Watch::Forget(token)) => watched.retain(|(t, _)| *t != token),
                    Err(TryRecvError::Empty) => break,
                    // The poll thread ended.
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if watched.is_empty() && watched.capacity() > KEEP_CONNS {
                watched = Vec::new();
            }
            continue;
        }
        // The one found ready (perhaps only ended), and any other that has
        // a message by now.
        let hit = index - 1;
        let mut woke = false;
        let mut kept = Vec::with_capacity(watched.len());
        for (i, (token, channel)) in watched.drain(..).enumerate() {
            if i == hit || !channel.is_empty() {
                if ready.send(token).is_err() {
                    return;
                }
                woke = true;
            } else {
                kept.push((token, channel));
            }
        }
        watched = kept;
        if woke {
            wake.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::thread;
    use std::time::Duration;

    use nix::poll::{PollFd, PollFlags, poll};

    use super::*;
    use crate::output::Stream;
    use crate::polling;

    fn entry(line: &str) -> LogEntry {
        LogEntry {
            service: "web".into(),
            stream: Stream::Stdout,
            pid: None,
            priority: None,
            time: std::time::SystemTime::now(),
            line: line.into(),
        }
    }

    #[test]
    fn the_relay_names_the_ready_channel_and_wakes_the_poll_thread() {
        let (wake_rx, wake) = polling::wake_pipe().expect("pipe");
        let (orders, watch_rx) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let relay_thread = thread::spawn(move || relay(&watch_rx, &ready_tx, &wake));

        let (first_tx, first) = crossbeam_channel::bounded::<LogEntry>(4);
        let (line_tx, lines) = crossbeam_channel::bounded::<LogEntry>(4);
        let (_quiet_tx, quiet) = crossbeam_channel::bounded::<LogEntry>(4);
        orders.send(Watch::Lines(1, first.clone())).expect("order");
        orders.send(Watch::Lines(2, lines.clone())).expect("order");
        orders.send(Watch::Lines(3, quiet)).expect("order");
        orders.send(Watch::Forget(3)).expect("order");
        first_tx.send(entry("zero")).expect("line");
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(1));
        // It only tells: the line is still there for the poll thread.
        assert_eq!(first.try_recv().map(|e| e.line), Ok(b"zero".to_vec()));
        // The relay names the channel, then wakes: the byte may come a moment later.
        let mut fds = [PollFd::new(wake_rx.as_fd(), PollFlags::POLLIN)];
        assert!(matches!(
            poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)),
            Ok(1)
        ));
        let mut byte = [0u8; 8];
        assert!(matches!(nix::unistd::read(&wake_rx, &mut byte), Ok(n) if n > 0));

        // A channel is watched once; the next line needs a new order.
        line_tx.send(entry("one")).expect("line");
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(2));
        assert_eq!(lines.try_iter().count(), 1);
        // An ended channel is ready too.
        orders.send(Watch::Lines(2, lines.clone())).expect("order");
        drop(line_tx);
        assert_eq!(ready.recv_timeout(Duration::from_secs(10)), Ok(2));
        // Token 3 was forgotten: nothing more comes.
        assert!(ready.recv_timeout(Duration::from_millis(100)).is_err());

        drop(orders);
        relay_thread.join().expect("the relay ends with its orders");
    }
}
