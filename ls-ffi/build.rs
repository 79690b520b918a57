//! Gives the shared library its SONAME, `liblayersec.so.<major>` from the crate's version (the
//! workspace version): programs linked against `liblayersec.so` record it and keep working
//! across compatible updates (for 0.x.y, every 0.x.y, as the SONAME says).

fn main() {
    let major =
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblayersec.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
