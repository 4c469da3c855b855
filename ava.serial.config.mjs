// Tests that must run alone: they stop or restart the broker, build and run containers, or
// start extra RabbitMQ nodes. One file at a time; each file keeps its own tests serial.
import { common } from './ava.config.mjs';

export default {
  ...common,
  files: ['test/**/*.serial.test.ts'],
  timeout: '5m',
  concurrency: 1,
};
