export {
  bodyLength,
  readRequestHead,
  scanChunked,
  type ChunkedInvalidReason,
  type ChunkedScan,
  type RequestHead,
  type RequestHeadInvalidReason,
  type RequestHeadResult,
} from './request-head.js';
