//! Fixtures made by other implementations (filled in below).
