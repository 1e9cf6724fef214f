/** The report: validate an experiment's results file and render tables, figures and one HTML page. */
export {
  renderReport,
  renderReportFromFile,
  renderReportLogged,
  reportNotes,
  type RenderedReport,
} from "./render.js";
export { replacedMessages, type EarlierReport } from "./folder.js";
export {
  parseExperimentResults,
  readExperimentResults,
  experimentResultsSchema,
  cellResultSchema,
  METHODS,
  JUDGES,
  type ExperimentResults,
  type CellResult,
  type RateWithN,
  type UtilityResult,
  type Method,
  type Judge,
} from "./schema.js";
export type { Interval } from "../eval/metrics.js";
export { buildTables } from "./paper-tables.js";
export { buildFigures, renderSvg, type Figure } from "./figures.js";
export { tableToCsv, tableToHtml, tableToMarkdown, type Table, type Cell, type Column } from "./table.js";
