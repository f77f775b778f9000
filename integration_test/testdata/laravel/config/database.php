<?php

return [
    'redis' => [
        'client' => 'phpredis',
        'options' => ['prefix' => 'laravel_database_'],
        // phpredis takes a path for a host as a unix socket.
        'default' => ['host' => env('REDIS_SOCKET'), 'port' => 0, 'database' => 0],
    ],
];
