//! The few HTML pages the proxy itself serves. Static text only: nothing from the request
//! or the link is ever interpolated, so there is nothing to escape.

pub const NOT_FOUND: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link not found</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>Link not found</h1>",
    "<p>This short link does not exist. Check that it was copied completely.</p></body></html>\n"
);

pub const GONE: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link expired</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>This link has expired</h1>",
    "<p>The link reached its end date or its maximum number of visits.</p></body></html>\n"
);

pub const DISABLED: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link disabled</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>This link is disabled</h1>",
    "<p>Its owner has switched it off.</p></body></html>\n"
);

pub const BANNED: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link blocked</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>This link has been blocked</h1>",
    "<p>It was reported and disabled by the administrators of this service ",
    "(for example for phishing, malware or spam).</p></body></html>\n"
);

/// The password form posts back to the same URL (empty action).
pub const PASSWORD_FORM: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Password required</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>This link is protected</h1>",
    "<form method=\"post\" action=\"\"><label>Password <input type=\"password\" name=\"password\" ",
    "autofocus required maxlength=\"128\"></label> <button type=\"submit\">Continue</button></form>",
    "</body></html>\n"
);

pub const WRONG_PASSWORD: &str = concat!(
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Password required</title>",
    "<meta name=\"robots\" content=\"noindex\"></head><body><h1>This link is protected</h1>",
    "<p role=\"alert\">That password is not correct.</p>",
    "<form method=\"post\" action=\"\"><label>Password <input type=\"password\" name=\"password\" ",
    "autofocus required maxlength=\"128\"></label> <button type=\"submit\">Continue</button></form>",
    "</body></html>\n"
);

pub const REFUSED: &str = "Requests from your network are not accepted.\n";
pub const TOO_MANY_REQUESTS: &str =
    "Too many requests from your address; wait a little and try again.\n";
pub const TOO_MANY_ATTEMPTS: &str = "Too many password attempts; wait a minute and try again.\n";
pub const BAD_REQUEST: &str = "Bad request.\n";
pub const METHOD_NOT_ALLOWED: &str = "Method not allowed.\n";
pub const URI_TOO_LONG: &str = "The resulting address is too long.\n";
pub const UNAVAILABLE: &str = "The service is temporarily unavailable; please retry.\n";
