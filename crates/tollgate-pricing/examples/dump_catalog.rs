//! Prints the built-in catalog as written by `Catalog::to_toml_string`.
fn main() {
    print!("{}", tollgate_pricing::Catalog::builtin().to_toml_string());
}
