// Loaded by `jco serve --jco-import`: preview2-shim gives a component no folders by default;
// this preopens $RILL_MODELS_DIR as /models, read as wasmtime serve's `--dir DIR::/models`.
import { _addPreopen } from '@bytecodealliance/preview2-shim/filesystem';
import process from 'node:process';
if (process.env.RILL_MODELS_DIR) _addPreopen('/models', process.env.RILL_MODELS_DIR);
