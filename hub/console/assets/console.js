// Progressive enhancement only (decision 0028): every page works without it. Marks
// the page as scripted, as GOV.UK Frontend's components expect, and starts them.
import { initAll } from "./govuk-frontend.min.js";

document.body.classList.add("js-enabled", "govuk-frontend-supported");
initAll();
