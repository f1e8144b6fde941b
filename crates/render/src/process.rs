//! Running an external renderer (helm, kustomize) safely: a scrubbed environment, a private HOME, a
//! wall-clock timeout and a cap on output size. Every spawn is counted so tests can prove the cache
//! spares them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{Limits, RenderError};

pub struct ToolRun<'a> {
    pub tool: &'a Path,
    pub args: Vec<std::ffi::OsString>,
    pub cwd: &'a Path,
    /// The app path shown in errors.
    pub shown: &'a Path,
    pub env: Vec<(String, std::ffi::OsString)>,
}

pub fn run(
    run: ToolRun<'_>,
    limits: &Limits,
    spawns: &AtomicUsize,
) -> Result<Vec<u8>, RenderError> {
    let tool_name = run
        .tool
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let home = tempfile::tempdir().map_err(|source| RenderError::Io {
        path: PathBuf::from("<temporary HOME>"),
        source,
    })?;
    let mut command = Command::new(run.tool);
    command
        .args(&run.args)
        .current_dir(run.cwd)
        // Nothing from the caller's environment (credentials, proxies, KUBECONFIG, HELM_*) leaks in.
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", "/nonexistent")
        .envs(run.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawns.fetch_add(1, Ordering::SeqCst);
    tracing::debug!(tool = %run.tool.display(), args = ?run.args, "spawning renderer");
    let mut child = command.spawn().map_err(|source| RenderError::Io {
        path: run.tool.to_path_buf(),
        source,
    })?;
    let overflow = Arc::new(AtomicBool::new(false));
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let limit = limits.max_output_bytes;
    let stdout_overflow = Arc::clone(&overflow);
    let stdout_reader = std::thread::spawn(move || read_capped(stdout, limit, &stdout_overflow));
    let stderr_overflow = Arc::new(AtomicBool::new(false));
    let stderr_reader =
        std::thread::spawn(move || read_capped(stderr, 64 * 1024, &stderr_overflow));
    let deadline = Instant::now() + limits.process_timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|source| RenderError::Io {
            path: run.tool.to_path_buf(),
            source,
        })? {
            break Some(status);
        }
        if overflow.load(Ordering::SeqCst) || Instant::now() >= deadline {
            // Killing can only fail if the child already exited, which the next wait reports.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = stdout_reader.join().unwrap_or_default();
    let error_output = stderr_reader.join().unwrap_or_default();
    if overflow.load(Ordering::SeqCst) {
        return Err(RenderError::ToolOutputTooLarge {
            tool: tool_name,
            path: run.shown.to_path_buf(),
            limit,
        });
    }
    let Some(status) = status else {
        return Err(RenderError::ToolTimeout {
            tool: tool_name,
            path: run.shown.to_path_buf(),
            timeout: limits.process_timeout,
        });
    };
    if !status.success() {
        return Err(RenderError::ToolFailed {
            tool: tool_name,
            path: run.shown.to_path_buf(),
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&error_output).trim().to_string(),
        });
    }
    Ok(output)
}

fn read_capped(mut pipe: impl Read, limit: usize, overflow: &AtomicBool) -> Vec<u8> {
    let mut output = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => return output,
            Ok(n) => {
                if output.len() + n > limit {
                    overflow.store(true, Ordering::SeqCst);
                    return output;
                }
                output.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
