//! The `mlx-native` command-line tool.

mod cli;

fn main() {
    restore_sigpipe();
    std::process::exit(cli::main());
}

/// Rust ignores SIGPIPE, so a closed reader (`mlx-native embed ... | head`) made the next println! panic. With the
/// default action the process ends quietly, as other command-line tools do.
#[cfg(unix)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}
