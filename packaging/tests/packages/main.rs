//! The distribution packages, tested as one binary so that the .deb is built once
//! (`support::deb`) for all of them.

mod deb;
mod recipes;
mod support;
