//! The security model (SPEC section 12), tried the way an attacker inside the
//! container would: an unprivileged service (`setpriv --reuid 65534`) in a
//! PID namespace where corral is PID 1, or beside corral as a subreaper.
//! Each test asserts that the attack fails and that corral keeps serving:
//! `ctl status` answers, restarts go on, SIGTERM still stops it.

mod children;
mod control;
mod files;
mod http;
mod notify;
