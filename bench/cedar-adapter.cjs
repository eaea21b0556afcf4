'use strict';
/* global require, __dirname, exports -- CommonJS, which the lint config does not declare for .cjs */
/* eslint-disable @typescript-eslint/no-require-imports -- bench.js loads this adapter with require() */
// The engine adapter /work/shared/bench/authz/bench.js loads through ENGINE=/abs/path/to/this file
// (see its README): compilePolicySet(policyText) -> (call) => ({ decision }), where `call` has the
// shape of cedar-wasm's isAuthorized input and `call.entities` is a cedar-wasm JSON entity list.
// It loads the compiled engine, so build first (npm run build). Node 20.19+ require()s an ES module
// that has no top-level await, as engine.js is.
const path = require('node:path');

const { CedarEngine } = require(path.join(__dirname, '..', 'dist', 'src', 'policy', 'cedar', 'engine.js'));

exports.compilePolicySet = function compilePolicySet(policyText) {
  const engine = CedarEngine.load({ sources: [{ text: policyText, file: 'authz-bench.cedar' }] });
  return (call) => {
    const d = engine.isAuthorized({ principal: call.principal, action: call.action, resource: call.resource, context: call.context }, call.entities);
    return { decision: d.decision };
  };
};
