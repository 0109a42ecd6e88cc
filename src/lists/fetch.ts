import { fetch, type Dispatcher, type Response } from 'undici';
import { PortcullisError, errorMessage } from '../errors.js';

export interface FetchedList {
  /** null when the server said the copy we have is current (304). */
  text: string | null;
  etag: string | null;
  lastModified: string | null;
}

/**
 * Downloads a list (or a catalog bundle) over http(s) with a deadline and a size cap (the body
 * is read in chunks and abandoned past the cap, so a hostile server cannot fill memory), sending
 * the validators of the copy we have so an unchanged document costs a 304. `dispatcher` carries
 * connection options such as extra trusted CAs.
 */
export async function fetchList(
  url: string,
  options: { maxBytes: number; timeoutMs: number; etag?: string | null; lastModified?: string | null; dispatcher?: Dispatcher; accept?: string },
): Promise<FetchedList> {
  const headers: Record<string, string> = { 'user-agent': 'portcullis', accept: options.accept ?? 'text/plain, */*' };
  if (options.etag) headers['if-none-match'] = options.etag;
  if (options.lastModified) headers['if-modified-since'] = options.lastModified;
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(options.timeoutMs), redirect: 'follow', ...(options.dispatcher === undefined ? {} : { dispatcher: options.dispatcher }) });
  } catch (e: unknown) {
    throw new PortcullisError('PCL_ERR_LIST_FETCH', `${url}: ${errorMessage(e)}`, { cause: e, details: { url } });
  }
  if (response.status === 304) {
    await response.body?.cancel();
    return { text: null, etag: options.etag ?? null, lastModified: options.lastModified ?? null };
  }
  if (!response.ok || response.body === null) {
    await response.body?.cancel();
    throw new PortcullisError('PCL_ERR_LIST_FETCH', `${url}: HTTP ${response.status}`, { details: { url, status: response.status } });
  }
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > options.maxBytes) {
    await response.body.cancel();
    throw tooLarge(url, options.maxBytes);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > options.maxBytes) {
        await reader.cancel();
        throw tooLarge(url, options.maxBytes);
      }
      chunks.push(value);
    }
  } catch (e: unknown) {
    if (e instanceof PortcullisError) throw e;
    throw new PortcullisError('PCL_ERR_LIST_FETCH', `${url}: ${errorMessage(e)}`, { cause: e, details: { url } });
  }
  return {
    text: Buffer.concat(chunks).toString('utf8'),
    etag: response.headers.get('etag'),
    lastModified: response.headers.get('last-modified'),
  };
}

function tooLarge(url: string, maxBytes: number): PortcullisError {
  return new PortcullisError('PCL_ERR_LIST_TOO_LARGE', `${url}: larger than ${maxBytes} bytes`, { details: { url, maxBytes } });
}
