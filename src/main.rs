//! `hwnas`: hardware-aware neural architecture search. See `hwnas --help` and the README.

mod cli;

fn main() -> std::process::ExitCode {
    // `hwnas ... | head` closes the pipe early: end quietly, as Unix tools do, instead of
    // panicking in `println!`. Rust ignores SIGPIPE by default; restore the default action.
    #[cfg(unix)]
    // SAFETY: called first thing, before any other thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
