pub mod by_type;
