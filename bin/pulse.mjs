#!/usr/bin/env node
// The pulse CLI. TypeScript runs through tsx's loader: no build step between a clone and `npm start`.
import { register } from 'tsx/esm/api';

register();
await import('../src/start/cli.ts');
