//! Gives the shared library its SONAME, so programs linked against `liblayersec.so` record
//! `liblayersec.so.0` and keep working across compatible (0.x.y) updates.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,liblayersec.so.0");
    println!("cargo:rerun-if-changed=build.rs");
}
