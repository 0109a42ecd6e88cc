import { PortcullisError } from '../../src/errors.js';

/** The PortcullisError `promise` rejects with; any other rejection, or none, fails the test. */
export async function rejection(promise: Promise<unknown>): Promise<PortcullisError> {
  try {
    await promise;
  } catch (e: unknown) {
    if (e instanceof PortcullisError) return e;
    throw e;
  }
  throw new Error('expected a PortcullisError, the promise resolved');
}
