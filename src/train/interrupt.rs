//! Ctrl-C and SIGTERM: the first asks training to stop after the current batch and save a
//! checkpoint; the second quits at once (every file on disk is still whole: writes are atomic).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

pub fn install() {
    // A file-size limit (ulimit -f) would otherwise kill the process mid-write with SIGXFSZ;
    // ignored, the write fails with an error we report, and the last checkpoint stays intact.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let installed = ctrlc::set_handler(|| {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
            STOP.store(true, Ordering::SeqCst);
            eprintln!("\ninterrupt: finishing this batch and saving a checkpoint (interrupt again to quit at once)");
        } else {
            eprintln!("\nsecond interrupt: quitting now; the last checkpoint is intact");
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupt will stop training without a final checkpoint");
    }
}

pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
