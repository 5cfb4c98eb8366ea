//! Rebuilds when a migration is added: `sqlx::migrate!` embeds the files of
//! `migrations/` but does not ask Cargo to watch the directory.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
