import { PostageError } from 'postage';

/**
 * A bad configuration (`POSTAGE_ERR_CONFIG`): the message names the key, the value (unless
 * secret) and where it came from. `postaged` exits 78 on it.
 */
export class ConfigError extends PostageError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('POSTAGE_ERR_CONFIG', message, { key });
    this.name = 'ConfigError';
    this.key = key;
  }
}
