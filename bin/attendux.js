#!/usr/bin/env node
import module from 'node:module';

// Node >= 22.1 keeps the compiled code of the modules on disk between runs (start-up of every command);
// Node 20 has no such cache, so the call is skipped there. NODE_DISABLE_COMPILE_CACHE=1 turns it off.
module.enableCompileCache?.();
import('../dist/cli/main.js').then((m) => m.main(process.argv));
