//! A WebAssembly module that every isolate of the process instantiates (Pyodide's interpreter,
//! the .NET runtime): compiled by V8 once, by the first isolate that asks.

use std::sync::OnceLock;

use deno_core::v8;

/// A module's bytes and, once compiled, V8's compiled module.
pub struct SharedModule {
    bytes: Vec<u8>,
    compiled: OnceLock<v8::CompiledWasmModule>,
}

impl SharedModule {
    /// The module of `bytes`, or why they are not WebAssembly (`name` in the message).
    pub fn new(name: &str, bytes: Vec<u8>) -> Result<Self, String> {
        if !bytes.starts_with(b"\0asm") {
            return Err(format!("{name} is not WebAssembly"));
        }
        Ok(Self {
            bytes,
            compiled: OnceLock::new(),
        })
    }

    /// A module object of it in the isolate of `scope` (undefined if V8 cannot compile it).
    pub fn object<'s>(&self, scope: &mut v8::PinScope<'s, '_>) -> v8::Local<'s, v8::Value> {
        if let Some(compiled) = self.compiled.get()
            && let Some(module) = v8::WasmModuleObject::from_compiled_module(scope, compiled)
        {
            return module.into();
        }
        match v8::WasmModuleObject::compile(scope, &self.bytes) {
            Some(module) => {
                let _ = self.compiled.set(module.get_compiled_module());
                module.into()
            }
            None => v8::undefined(scope).into(),
        }
    }
}
