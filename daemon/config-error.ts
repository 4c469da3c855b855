/** A bad configuration: the message names the key, the value (unless secret) and where it came from. Exit 78. */
export class ConfigError extends Error {
  readonly key: string;
  constructor(key: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.key = key;
  }
}
