"""Tasks written for Django's tasks framework only: nothing here names errands."""

import asyncio

try:
    from django.tasks import task
except ImportError:  # Django < 6
    from django_tasks import task

from .models import Order


@task()
def add(a, b):
    return a + b


@task()
def echo(value):
    return value


@task(queue_name="mail", priority=10)
def send_receipt(order_id, database="default"):
    order = Order.objects.using(database).get(pk=order_id)
    order.receipt_sent = True
    order.save(using=database)
    return {"order": order_id, "total": order.total}


@task()
def explode(message):
    raise ValueError(message)


@task()
async def double_later(x):
    await asyncio.sleep(0)
    return x * 2


@task(takes_context=True)
def with_context(context, x):
    return {"attempt": context.attempt, "id": context.task_result.id, "x": x}


def plain(x):
    """Not a task: a job naming it must fail, and it can be made a task in a test."""
    return x
