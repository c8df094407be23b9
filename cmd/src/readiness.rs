//! Readiness for the init system: systemd's `Type=notify` units wait for `READY=1` on `$NOTIFY_SOCKET` before they
//! count kaasd as started (and start units ordered after it). Without `$NOTIFY_SOCKET` (OpenRC, a shell, a test)
//! this does nothing.

pub fn ready(what: &str) {
    match sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        Ok(()) => tracing::debug!(what, "told the init system kaasd is ready"),
        Err(error) => tracing::warn!(error = %error, what, "cannot tell systemd kaasd is ready ($NOTIFY_SOCKET)"),
    }
}
