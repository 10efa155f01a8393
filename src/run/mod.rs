//! The run folder: its paths, crash-safe checkpoints, JSON-lines logs, the TensorBoard log
//! and atomic writes.

mod atomic;
mod board;
mod checkpoint;
mod log;
pub mod pytorch;
mod record;
pub mod safetensors;
mod state_dict;
pub mod tensorboard;

pub use atomic::{write_atomic, write_atomic_with};
pub use board::{Board, BoardPosition, PREVIEW_TAG, STEP_TAGS};
pub use checkpoint::{DataFingerprint, FileEntry, Manifest, Records, RunDir, MANIFEST, RECORDS};
pub use log::{read_losses, truncate_jsonl, LossRow, MetricRow};
pub use record::{
    load_module, module_from_record_bytes, record_bytes, record_from_bytes, save_module,
};
pub use state_dict::{is_state_dict, read_state_dict};
