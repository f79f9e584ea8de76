;; Not a task: valid WebAssembly without a _start export.
(module (func (export "main") (result i32) (i32.const 7)))
