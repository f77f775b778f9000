<?php
// Answers with the session's user (or "anonymous") and the ID of the
// session the backend served, so that a test can tell whose session a
// request was given. The session is closed at once: a fast page.
require __DIR__ . '/lib.php';

session_start();
session_write_close();
echo $_SESSION['user'] ?? 'anonymous', ' ', session_id(), "\n";
