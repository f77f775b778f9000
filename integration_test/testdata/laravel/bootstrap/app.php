<?php
// A minimal Laravel 8 application for the integration tests: the stock
// HTTP kernel and web middleware group (EncryptCookies, StartSession, ...),
// configured from the environment that the test's PHP-FPM pool sets:
// APP_KEY, SESSION_DRIVER (redis or file), REDIS_SOCKET and
// LARAVEL_STORAGE (a writable temp dir).

// Composer would autoload the application's own classes.
spl_autoload_register(function ($class) {
    if (strncmp($class, 'App\\', 4) === 0) {
        $file = __DIR__ . '/../app/' . str_replace('\\', '/', substr($class, 4)) . '.php';
        if (is_file($file)) {
            require $file;
        }
    }
});

$app = new Illuminate\Foundation\Application(dirname(__DIR__));
$app->useStoragePath(getenv('LARAVEL_STORAGE'));

$app->singleton(
    Illuminate\Contracts\Http\Kernel::class,
    App\Http\Kernel::class
);
$app->singleton(
    Illuminate\Contracts\Debug\ExceptionHandler::class,
    Illuminate\Foundation\Exceptions\Handler::class
);

return $app;
