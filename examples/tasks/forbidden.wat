;; Hostile: imports a host function no edgenode host offers (a socket of its own).
(module
  (import "env" "open_socket" (func $sock (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (drop (call $sock (i32.const 80)))))
