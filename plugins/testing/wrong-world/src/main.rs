//! Test-only: a component built for another world (`wasi:cli/command`).

fn main() {
    println!("I am a command, not a vumi application");
}
