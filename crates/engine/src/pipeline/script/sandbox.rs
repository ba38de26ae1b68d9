//! The Lua state a transform script runs in: only the libraries that compute (string, table,
//! math, utf8), nothing that reaches files, processes, the network or other code; a memory
//! limit; and a time limit per call, enforced by a hook that counts VM instructions.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, VmState};

/// VM instructions between two looks at the clock: cheap, and fine-grained enough that a
/// runaway call overshoots its limit by microseconds.
const HOOK_EVERY: u32 = 10_000;

/// Globals of the base library that load code or touch the host, removed outright.
const REMOVED: &[&str] = &["dofile", "loadfile", "load", "loadstring", "collectgarbage"];

/// Names a script may reach for out of habit; each raises an error that says why it is absent.
const ABSENT: &[&str] = &["io", "os", "debug", "package", "require"];

/// Limits of one script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest one call of the script (or its loading) may run.
    pub time: Duration,
    /// Most memory the Lua state may hold, in bytes.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_millis(100),
            memory: 64 << 20,
        }
    }
}

/// A sandboxed Lua state with its clock.
pub struct Sandbox {
    pub lua: Lua,
    /// When the current call started; `None` between calls.
    started: Rc<Cell<Option<Instant>>>,
    /// Set by the hook when it stops a call: the line it was on, if Lua knows.
    overran: Rc<Cell<Option<Option<usize>>>>,
    pub limits: Limits,
}

impl Sandbox {
    pub fn new(limits: Limits) -> mlua::Result<Sandbox> {
        // No `coroutine` either: a hook is per Lua thread, so code in a coroutine would run
        // outside the time limit.
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8,
            LuaOptions::default(),
        )?;
        let globals = lua.globals();
        for name in REMOVED {
            globals.raw_set(*name, mlua::Nil)?;
        }
        // Bytecode could be handed to a loader; there is none left, but leave no way to make it.
        let string: mlua::Table = globals.raw_get("string")?;
        string.raw_set("dump", mlua::Nil)?;
        for name in ABSENT {
            let message = format!(
                "{name} is not available: transform scripts run sandboxed, without files, processes, network or modules"
            );
            // error(..., 2) blames the script's line that reached for it.
            let raise: mlua::Function = lua
                .load(format!("return function() error({message:?}, 2) end"))
                .set_name("=sandbox")
                .call(())?;
            let value = match *name {
                "require" => mlua::Value::Function(raise),
                _ => {
                    let table = lua.create_table()?;
                    let meta = lua.create_table()?;
                    meta.raw_set("__index", raise.clone())?;
                    meta.raw_set("__newindex", raise)?;
                    table.set_metatable(Some(meta))?;
                    mlua::Value::Table(table)
                }
            };
            globals.raw_set(*name, value)?;
        }
        // print() goes to ferry's log, not into its stdout.
        let log = lua.create_function(|_, line: mlua::String| {
            tracing::info!(target: "ferry::script", "{}", line.to_string_lossy());
            Ok(())
        })?;
        let print: mlua::Function = lua
            .load(
                "local log = ...\n\
                 return function(...)\n\
                   local n, t = select('#', ...), {...}\n\
                   for i = 1, n do t[i] = tostring(t[i]) end\n\
                   log(table.concat(t, '\\t', 1, n))\n\
                 end",
            )
            .set_name("=sandbox")
            .call(log)?;
        globals.raw_set("print", print)?;
        let started: Rc<Cell<Option<Instant>>> = Rc::default();
        let overran: Rc<Cell<Option<Option<usize>>>> = Rc::default();
        let (clock, stop) = (started.clone(), overran.clone());
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |_, debug| match clock.get() {
                Some(at) if at.elapsed() > limits.time => {
                    stop.set(Some(debug.current_line()));
                    Err(mlua::Error::runtime("time limit"))
                }
                _ => Ok(VmState::Continue),
            },
        )?;
        Ok(Sandbox {
            lua,
            started,
            overran,
            limits,
        })
    }

    /// Runs `f` (which calls into the script) under the time and memory limits. On failure,
    /// the line the hook stopped it on when it ran out of time.
    ///
    /// The memory limit holds only while the script runs: with one set, mlua guards every
    /// value ferry hands over or reads back in a protected call, which costs several times
    /// what the conversion does. Those values are the entry's own, bounded by the batch.
    pub fn timed<R>(&self, f: impl FnOnce() -> mlua::Result<R>) -> Result<R, Failure> {
        self.overran.set(None);
        self.lua
            .set_memory_limit(self.limits.memory)
            .map_err(Failure::Lua)?;
        self.started.set(Some(Instant::now()));
        let result = f();
        self.started.set(None);
        // 0: none.
        self.lua.set_memory_limit(0).map_err(Failure::Lua)?;
        result.map_err(|error| match self.overran.take() {
            Some(line) => Failure::TimedOut { line },
            None => Failure::Lua(error),
        })
    }
}

/// Why a call into the script failed.
#[derive(Debug)]
pub enum Failure {
    /// The hook stopped it on this line (negative when Lua could not tell).
    TimedOut {
        line: Option<usize>,
    },
    Lua(mlua::Error),
}

/// The one line worth showing of a Lua error: its message, which Lua starts with
/// `<script>:<line>:` for an error raised in the script, without mlua's prefix or traceback.
pub fn message(error: &mlua::Error) -> String {
    let inner = match error {
        mlua::Error::CallbackError { cause, .. } => return message(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::MemoryError(_) => "out of memory".to_string(),
        other => other.to_string(),
    };
    inner
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}
