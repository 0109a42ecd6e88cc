export { fetchList, type FetchedList } from './fetch.js';
export { LIST_FORMATS, countEntries, detectFormat, parseList, type ListFormat, type ParsedList, type SkippedLine } from './formats.js';
export { ListManager, type ListManagerOptions, type ListStatus } from './manager.js';
